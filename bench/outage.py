"""`make outage`: a private PostgreSQL stopped under steady load on two servers.
The scenario lives in tests/support/outage.py, which the tests run shorter."""

from tests.support.outage import main

if __name__ == "__main__":
    main()
