"""Content safety: policies of checks over requests and answers, run as a stage of the chain.

    stage.py       the stage: a deployment's policy over its request and its answer's events
    policy.py      policies compiled from the config; inspections of texts; text held back on streams
    moderation.py  the moderation check's classifier: a deployment's /v1/moderations, or a judge
    moderated.py   moderation over a request, and over a choice a sentence at a time
    pii.py         personal data and secrets (with the checksums that keep near-misses out)
    blocklist.py   terms (whole words, any case or accents) and regular expressions
    spans.py       findings, and text with findings replaced
    shield.py      prompt_shield: which texts of a request are scored, by the process's classifier
    shield_model.py  the classifier: all-MiniLM-L6-v2 embeddings by llama.cpp, and a logistic head

It sits with the other stages: it imports the pipeline's contract, the config and the schema,
and nothing above them; the surfaces read the verdicts it leaves on the call.
"""

from modelgate.safety.moderation import Classifier
from modelgate.safety.policy import Policy, compile_policies
from modelgate.safety.shield import Shield
from modelgate.safety.stage import ContentSafety

__all__ = ["Classifier", "ContentSafety", "Policy", "Shield", "compile_policies"]
