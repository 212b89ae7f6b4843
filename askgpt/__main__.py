from askgpt.cli.entry import main

main()
