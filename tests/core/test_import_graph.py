"""One direction of imports (tests/core/import_graph.py): no circles, no import of a higher layer, and no import
inside a function but of optional packages and the CLI's lazy loading. The circle finder and the layer table are
also checked on planted cases, so a pass means something."""

from __future__ import annotations

import import_graph as graph


def test_no_circles():
    assert graph.circles(graph.edges()) == []


def test_no_upward_imports():
    assert graph.upward_imports() == []


def test_no_function_level_imports():
    assert graph.function_level_imports() == []


def test_every_module_has_a_layer():
    for module in graph.module_files():
        graph.layer_of(module)


def test_circle_finder_finds_a_planted_circle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert graph.circles(planted) == [["a", "b", "c"]]


def test_layers_order_the_named_packages():
    assert graph.layer_of("fastkd.cli") < graph.layer_of("fastkd.reproduce.grid") < graph.layer_of("fastkd.methods.ema")
    assert graph.layer_of("fastkd.methods.ema") < graph.layer_of("fastkd.engine.trainer")
    assert graph.layer_of("fastkd.engine.trainer") < graph.layer_of("fastkd.models.dropout")
    assert graph.layer_of("fastkd.models.dropout") < graph.layer_of("fastkd.kernels.ema")
    assert graph.layer_of("fastkd.kernels.ema") < graph.layer_of("fastkd.config.schema")
