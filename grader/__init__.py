"""Grader for homework 1: checks a submission zip and scores the homework package inside."""
