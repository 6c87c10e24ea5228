from amlops.cli import main

main()
