"""Answering questions: retrieval (dense, keyword, hybrid; one or many
questions at a time) and generation from what was retrieved.
"""
