"""Metrics and probes of a trained state: error, NLL, ECE (`evaluate`), FGSM and PGD
(`attacks`), deformations, out-of-distribution detection (`ood`), the robustness report that
combines them (`robustness`), 2-D separation (`separation`) and model FLOPs (`flops`).

Evaluation builds on the library (`mmix_jax`) and on `mmix_jax.data`; nothing in the library
imports it. Import the module you need: this package imports nothing itself.
"""
