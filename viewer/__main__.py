"""Entry point: ``radview`` / ``python -m viewer``.

Dispatches to the headless commands (``analyze``, ``models``, ``--self-test``, ``--version``) without
importing Qt, and otherwise to the GUI composition root in :mod:`viewer.app`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Before anything imports onnxruntime or Qt: no library may reach the network
    # (viewer/offline.py, docs/ROBUSTNESS.md "No network").
    from viewer.offline import deny_network_sockets, disable_library_telemetry

    disable_library_telemetry()
    if not _cluster_analyze(args):  # Dask needs TCP: opt-in, per run (docs/SCALING.md)
        deny_network_sockets()
    if args[:1] == ["analyze"]:
        from viewer.cli import analyze_main

        return analyze_main(args[1:])
    if args[:1] == ["models"]:
        from viewer.services.models_cli import models_main

        return models_main(args[1:])
    if "--log-path" in args:
        from viewer.services.support_log import LOG_FILE_NAME, default_log_dir

        print(default_log_dir() / LOG_FILE_NAME)
        return 0
    if "--version" in args:
        from viewer import __version__

        print(f"radview {__version__}")
        return 0
    if "--self-test" in args:
        from viewer.selftest import selftest_main

        return selftest_main(args)
    from viewer.app import main as app_main

    return app_main(args)


def _cluster_analyze(args: list[str]) -> bool:
    """``radview analyze ... --scheduler ADDR`` or ``--local-cluster N``: the one networked run."""
    return args[:1] == ["analyze"] and any(
        a.split("=", 1)[0] in ("--scheduler", "--local-cluster") for a in args[1:])


if __name__ == "__main__":
    sys.exit(main())
