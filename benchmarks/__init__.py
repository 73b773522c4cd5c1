"""Side-by-side timing scripts; each module ``benchmarks/<name>.py`` has ``main()``."""
