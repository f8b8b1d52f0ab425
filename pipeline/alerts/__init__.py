"""Email keyword alerts: match, queue durably, mail once.

    match.py    rules against articles; ``queue_matches`` (before indexing); ``test_rule`` (dry run)
    render.py   same-story grouping, safe text, the multipart email
    deliver.py  ``alert_stage`` (immediate rules) and ``send_digest``: the delivery state machine

Flow (``queue_matches`` before the new articles are indexed, ``alert_stage`` after)::

    match each rule (query + topic/language filters) against the cycle's articles
      → store.alert_enqueue(pairs)              durable queue keyed by (rule_id, article_id);
                                                 idempotent; pairs already sent are skipped
    (index the articles)
      → for each *immediate* rule:              one email with ALL its pending pairs
            throttle check (emails in the last per_seconds < max_emails, else stay queued)
            store.alert_claim(…, INTERRUPTED)    claim: only pairs no other cycle claimed within
                                                 CLAIM_TIMEOUT; also the "delivery started" marker
            mailer.send(message)                 transient errors retried with backoff inside
            store.alert_mark_sent(…)             confirm: sent-log rows + queue removal + email log

*Digest* rules only queue; ``send_digest`` (``mediamon alerts digest``, the Airflow digest DAG)
mails them, grouped by topic, newest first.

Guarantees
----------
* A pair is mailed at most once, except for the window below: the sent-log is the authority,
  ``alert_enqueue`` never re-queues a logged pair and ``alert_pending`` never returns one.
* A pair is never dropped: a transient failure (4xx, connection drop, timeout, outbox not writable)
  leaves it pending with the error recorded; the next cycle (or digest run) sends it again,
  together with whatever matched since.  A permanent failure (5xx) marks the batch ``failed``
  with the server's reply; it is reported in the counters and ``mediamon alerts list`` and is not
  retried until ``mediamon alerts retry RULE`` puts it back.  Throttled items stay pending and
  roll into the next email.  At most ``alert_max_items_per_email`` stories go into one email;
  the email says how many more are queued, and they follow in the next one.
* Flood fairness (``deliver.fair_selection``): one email holds at most
  ``alert_max_items_per_source`` stories of one source (its newest), filled round-robin over the
  sources; a source's older pending pairs are counted in the email ("and 812 more from X") and
  marked ``summarised`` once it is sent: never pending again, so the backlog stays bounded.

The remaining duplicate window
------------------------------
SMTP cannot be made atomic with our database.  If the process dies (or the store write fails)
*after* the SMTP server accepted the message (reply 250 to the final ``.``) and *before*
``alert_mark_sent`` committed, the pairs are still pending and the next run sends them again:
**at most one duplicate email per (rule, batch) per such crash**; never a lost item.  The window
is the time between the server's 250 and the SQLite commit (milliseconds).  The resend waits
until the claim is older than ``CLAIM_TIMEOUT`` (10 min: until then the pairs belong to a send
that may still be running).  Such a resend is
detected (the batch still carries the "delivery started" marker written before the send),
logged as ``alert_possible_duplicate`` and counted in ``alert_possible_duplicates``.  For the
outbox the same window exists between renaming the ``.eml`` file into place and the commit.
"""

from .deliver import (CLAIM_TIMEOUT, COUNT_KEYS, INTERRUPTED, MISSING_ARTICLE_GRACE, RuleOutcome, alert_stage, deliver_rule,
                      send_digest)
from .match import CompiledRule, TestHit, compile_rules, match_articles, queue_matches, rule_matches, test_rule
from .match import AlertFloors, alert_floors
from .render import (SAME_STORY_WINDOW, SNIPPET_CHARS, TITLE_CHARS, Story, build_message, clean_text,
                     group_stories, header_safe, highlight, normalized_title, safe_link, story_view)

__all__ = ["AlertFloors", "alert_floors",
           "CLAIM_TIMEOUT", "COUNT_KEYS", "INTERRUPTED", "MISSING_ARTICLE_GRACE", "SAME_STORY_WINDOW", "SNIPPET_CHARS",
           "TITLE_CHARS", "CompiledRule", "RuleOutcome", "Story", "TestHit", "alert_stage", "build_message",
           "clean_text", "compile_rules", "deliver_rule", "group_stories", "header_safe", "highlight",
           "match_articles", "normalized_title", "queue_matches", "rule_matches", "safe_link", "send_digest",
           "story_view", "test_rule"]
