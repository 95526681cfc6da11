"""The command layer: what `gmnae train | evaluate | merge` run (argument parsing, run folders, Lightning
Trainer wiring, sweeps). Only this layer sees argparse objects; it calls the library below with typed
arguments. `gmnae.cli` dispatches here; the zoo commands live in `gmnae.zoo.commands`."""
