"""Homework 1: low-memory training and inference with BigNet."""
