"""The technician's console: the pages and the REST API, each of which reads and acts on several apps.

Apps never import the console; the console imports apps' models and service functions."""
