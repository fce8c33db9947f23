"""Tools that use a trained generator: generate, style-mix, video, project, transfer."""
