"""What inventory tells the apps above it (which it may not import)."""

from django.dispatch import Signal

# load_demo loaded a simulated datacentre's inventory file: keyword arguments site (the Site) and inventory (the
# file's dict, secrets included). A receiver returns a short description of what it set up, or None.
lab_loaded = Signal()
