"""Semsearch offline indexer: model export and catalog ingestion."""
