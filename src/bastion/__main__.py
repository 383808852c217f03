"""``python -m bastion``: the same command line as the ``bastion`` console script."""

from bastion.cli.app import main

if __name__ == "__main__":
    main()
