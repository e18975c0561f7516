"""Scale-out and operations: replicas behind HAProxy, model rollouts, monitoring, manifests."""
