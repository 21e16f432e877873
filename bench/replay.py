"""`make replay`: a year of production lived month by month through the real server, registry
and jobs. The scenario lives in tests/support/replay.py, which the tests run on 3 months."""

from tests.support.replay import main

if __name__ == "__main__":
    main()
