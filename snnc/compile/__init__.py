"""The compiler: ``trace`` (nn -> ir), the generic passes (``fold_bn``, ``remove_dead``), the pass
manager and the report; :func:`snnc.compile.pipeline.compile_graph` runs them, then the target's
own lowering (``target.lower``). ``compile`` never imports :mod:`snnc.targets`."""
