"""Inference: classifier maps over whole volumes and the segmentation pipeline."""
