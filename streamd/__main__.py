from streamd.cli.app import main

main()
