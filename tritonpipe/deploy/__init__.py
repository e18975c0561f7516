"""Scale-out and operations: replicas behind HAProxy, model rollouts, monitoring, manifests."""

from tritonpipe.deploy.balancer import Backend, Balancer, BalancerOptions, Runtime
from tritonpipe.deploy.replicas import ReplicaSet, ReplicaSetOptions
from tritonpipe.deploy.rollout import Replica, Rollout

__all__ = [
    "Backend",
    "Balancer",
    "BalancerOptions",
    "Replica",
    "ReplicaSet",
    "ReplicaSetOptions",
    "Rollout",
    "Runtime",
]
