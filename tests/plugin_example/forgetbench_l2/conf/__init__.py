"""Hydra config groups of the forgetbench-l2 plugin (experiment/*.yaml); forgetbench searches them after its own."""
