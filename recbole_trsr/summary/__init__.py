"""Preference summaries: history blocks, hierarchical and recurrent summarization, and their persistent store."""
