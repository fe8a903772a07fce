"""automl's recipes in other trainers (each module an optional extra): ``lightning`` for a Lightning Trainer."""
