"""One module per command-line stage, each generic over the GANs (`tfganaug.gans.GANS`) and the
task nets: train_gan, synthesize, train_cls, train_seg, evaluate, export. Each reads and writes
run folders (`tfganaug.runs`), so any stage can be rerun alone from what the previous one left,
as nnU-Net hands files from stage to stage."""
