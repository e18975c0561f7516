from tritonpipe.cli.main import main

main()
