"""Paired records and where they come from.

``records`` (the schema and its files), ``synthetic`` (offline arithmetic twins, the
embedded trainer's default), ``sources`` (``coreward prepare``: MATH, MATH500, GSM8K, AMC,
AIME, the published rephrased sets, CHAMP, mathematics_dataset, local files) and
``rephrase`` (``coreward rephrase``: LLM twins with validation). See docs/data.md.
"""
from nemo_coreward.data.records import PairRecord, RecordError, load_records, sides, write_records

__all__ = ["PairRecord", "RecordError", "load_records", "sides", "write_records"]
