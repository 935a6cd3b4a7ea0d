"""What serving needs: label contract, tokenization, artefacts, local runner, language routing, Triton client and server. Imports nothing from training."""
