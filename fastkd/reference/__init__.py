"""Everything about the authors' code in one place.

- ``flags``: each reference script's command-line flags, spelled, typed and defaulted as the script does.
- ``compat``: `fastkd compat SCRIPT ARGV...`, translating those command lines into fastkd configs (``argv``: the
  flags of a call; one translator per script; ``translate``: the whole resolution), and `fastkd compat export`.
- ``run_net``: the ViT reference's pycls YAML and ``KEY VALUE`` overrides, and each paper experiment's reference
  values.
- ``keys``: state-dict key maps between fastkd's models and the reference's checkpoints (``init_weights`` to
  load, ``export_reference_checkpoint`` to write).
- ``errors``: ``CompatError``.

Where `semantics: reference` and `semantics: standard` differ is documented in docs/semantics.md (R1 ... R26);
the methods switch on their plan's ``semantics``. Submodules are imported on use (the engine imports ``keys``
without pulling in the compat translator).
"""
