"""Setting up a real cloud for the Lithops platform: ``fasdl aws init`` (``aws`` for the pure
parts: policies, the Lithops config, the runtime's Dockerfile and the Lithops command lines;
``aws_init`` for the steps that call AWS and Lithops)."""
