"""The product's core: domain rules, persistence, M-Pesa, the conversation and the use cases.

Layers, inwards: ``domain`` (pure) ← ``db``, ``mpesa`` ← ``services`` (one folder per
capability) ← ``dialog``; adapters (``bot``, ``webhooks``, ``senders``, ``admin_web``) and the
composition root (``smiling_steps``) sit outside and are never imported from here.
"""
