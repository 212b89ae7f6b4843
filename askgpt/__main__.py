from askgpt.cli.app import main

main()
