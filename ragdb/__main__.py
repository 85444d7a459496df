from ragdb.cli import main

main()
