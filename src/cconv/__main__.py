"""python -m cconv info | bench [options]"""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv else "info"
    if cmd == "info":
        from . import show_config

        show_config()
    elif cmd == "bench":
        from ._bench import main as bench_main

        bench_main(argv[1:])
    else:
        print("usage: python -m cconv info | bench [--suite backward|transposed] "
              "[--layout NHWC] [--dtype float64] [--repeat N] [--threads N] "
              "[--shapes NAME ...]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
