"""Data: resumes in, words with IOB2 tags out.

Owns the three dataset formats, span cleaning, seeded splits, k-fold and the dataset
fingerprint (``dataset``), dataset statistics (``stats``) and the deterministic demo generator
(``demo``; its styles ``demo_realistic`` and ``demo_compact`` draw from ``demo_words``). May
import ``core``, ``storage`` and ``settings``; independent of ``study`` (neither imports the
other).
"""
