"""`python -u -m amlops.devops <TaskName>`: what the Node launcher runs. Always exits 0 after task.complete."""
import sys

from amlops.devops.runtime import main

sys.exit(main(sys.argv[1:]))
