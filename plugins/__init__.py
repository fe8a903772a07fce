"""automl's built-in trick plugins, one module each, registered through the ``automl`` entry-point group."""
