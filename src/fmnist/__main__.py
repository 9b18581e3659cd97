"""`python -m fmnist` and the `fmnist` command: signals are taken first (fmnist.signals), so that one
arriving while the command line's imports take their seconds stops it cleanly, then the command runs."""

import sys

from fmnist import signals


def main() -> int:
    signals.install()
    try:
        from fmnist.cli import main as run
    except (KeyboardInterrupt, signals.Stopped) as stop:
        return signals.report(stop)
    return run()


if __name__ == "__main__":
    sys.exit(main())
