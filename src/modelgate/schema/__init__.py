"""The canonical language spoken between surfaces, the pipeline and providers."""
