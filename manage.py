#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from config.devstack import join_make_run

    join_make_run()
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a missing setting: say which, not a traceback
        sys.exit(f"manage.py: {exc}")


if __name__ == "__main__":
    main()
