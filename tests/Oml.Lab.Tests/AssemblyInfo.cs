// libtorch has one global random generator: seeded sampling (and random initialisation) in one test would be disturbed
// by another test drawing from it at the same time, so the lab's tests run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
