"""What the slug runs at start: config rendering, the web process's parent, its log listener.

Copied into the slug as ``$HOME/.dotcloud/lib/dcruntime`` and run with the slug's own Python
(``python3 -m dcruntime.<module>``, ``PYTHONPATH`` set by the calling script). Standard library
only: it must not depend on, or collide with, anything the app installs.
"""
