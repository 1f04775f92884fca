"""K-Reduce: the trigger (coordinator) and the workers, with ScatterReduce and AllReduce as K = W and K = 1."""
