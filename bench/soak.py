"""`make soak`: 10 minutes of steady load on the real server, then a database outage under it.
The scenario lives in tests/support/soak.py, which the tests run shorter."""

from tests.support.soak import main

if __name__ == "__main__":
    main()
