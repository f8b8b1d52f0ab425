"""Exit codes of the ``mediamon`` command, one place, documented in README ("Exit codes").

Cron, systemd and Airflow's BashOperator can act on these:

====  ======================  ===============================================================
code  name                    meaning
====  ======================  ===============================================================
0     OK                      everything asked for was done (some feeds may have failed)
1     ERROR                   the command failed (a mediamon error, printed on stderr)
2     USAGE                   bad command line or configuration (nothing was done)
3     ALL_FEEDS_FAILED        ``run``: every due feed failed, or the store is unreachable
4     MAIL_DEFERRED           ``run``/``alerts``: a digest could not be sent; it is kept and retried
75    LOCKED                  another ``mediamon run`` holds this store's lock (EX_TEMPFAIL)
====  ======================  ===============================================================
"""

from __future__ import annotations

OK = 0
ERROR = 1
USAGE = 2
ALL_FEEDS_FAILED = 3
MAIL_DEFERRED = 4
LOCKED = 75  # sysexits.h EX_TEMPFAIL: try again later

__all__ = ["OK", "ERROR", "USAGE", "ALL_FEEDS_FAILED", "MAIL_DEFERRED", "LOCKED"]
