"""`python -m bot` runs the newsbot command line."""

from bot.entry import main

main()
