"""Use cases, one package per capability; each public function runs one unit of work.

``payments`` and ``booking`` queue ``notifications``; everything writes the ``audit`` trail;
``reconciliation`` and ``ops`` stand beside them. Nothing imports against that flow
(tests/unit/test_architecture.py checks it; docs/architecture.md shows the layout).
"""
