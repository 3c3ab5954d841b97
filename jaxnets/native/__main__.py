"""``python -m jaxnets.native build [--force]`` compiles the oneDNN kernels;
``python -m jaxnets.native status`` says whether they are used and why not."""

from __future__ import annotations

import argparse
import sys

from jaxnets.native import library


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxnets.native", description=__doc__)
    parser.add_argument("command", choices=("build", "status"))
    parser.add_argument("--force", action="store_true", help="rebuild even if it is built")
    parser.add_argument(
        "--optional",
        action="store_true",
        help="where it cannot be built here (platform, compiler or oneDNN missing), say why and "
        "exit 0: the pure JAX path runs; a failing compile still exits 1",
    )
    args = parser.parse_args(argv)
    if args.command == "build":
        try:
            library.build(force=args.force)
        except library.NotBuildable as error:
            print(f"jaxnets.native: {error}", file=sys.stderr)
            if not args.optional:
                return 1
        except library.BuildError as error:
            print(f"jaxnets.native: {error}", file=sys.stderr)
            return 1
    print(library.status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
