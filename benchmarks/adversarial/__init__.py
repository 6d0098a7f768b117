"""Attacks on a boot node, as scripts: ``python -m benchmarks.adversarial``.

Every attack runs against a real ``autonat boot`` process on loopback, from
loopback source addresses that stand for other hosts and networks, while an
honest ``autonat probe`` must still get its verdict. Modules:

* ``_lab`` - the boot processes, the honest probe, resource sampling, the
  attackers' bare client and the :class:`~benchmarks.adversarial._lab.Result` row;
* ``_connections`` - slot attacks: idle floods (1a, 1b), half-open
  handshakes (2), TCP connections that never upgrade (8);
* ``_protocols`` - dial-request flood (3), /status poisoning (4),
  descriptor pressure (5), stalled stream (9);
* ``_churn`` - planner churn (6) and config bombs (7);
* ``__main__`` - the runner and its table.

The README's "Reliability" section holds the table of the last full run and the soak figures
(``benchmarks/soak.py``); tests/test_adversarial.py runs each attack small.
"""
