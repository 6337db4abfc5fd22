"""Driver conformance: pymongo's own test suite, direct to SecantusDB and through Argon.

Theory of operation
-------------------
The question is not "does the driver suite pass" (SecantusDB is not mongod, and
many of pymongo's tests need a replica set, fail points or server features it
lacks) but "what breaks *because Argon is in the way*". So the same driver test
files run three times, each against fresh processes:

``direct``
    pymongo's tests talk straight to a new SecantusDB. This is the baseline:
    whatever fails here fails because of the upstream, not because of Argon.
``main``
    a new SecantusDB behind a new Argon; the tests read and write main.
``branch``
    as ``main``, but a fresh branch is created from main and made Argon's
    default branch before the tests start, so every unqualified database the
    tests use is served from the branch's overlays.

The pieces, in the order a run uses them:

``source``
    finds the pymongo version this project pins, downloads that release's
    source distribution from PyPI once (cached under ``.cache/``) and extracts
    its ``test/`` directory plus a pytest configuration derived from the
    release's own.
``plugin``
    a pytest plugin loaded into the driver test process: it keeps traffic on
    loopback, gives known slow tests a larger time budget, and writes every
    test outcome to a JSON-lines file as it happens.
``run``
    starts the processes of a target (reusing ``tests/processes.py``), runs
    pytest on the driver test files in a subprocess with a per-test and an
    overall time limit, and stops exactly what it started.
``results``
    turns the JSON-lines file into one outcome per test and saves the results
    of a run as JSON under ``.cache/conformance/``.
``report``
    prints the comparison table and, per target, the tests that pass direct but
    not there, grouped by the first line of their failure.

This module imports nothing: the plugin is imported inside the driver test
process, which must not pay for (or be disturbed by) the rest of the package.
"""
