/** Every test sandbox, netns, cgroup and instance starts with this (swept at suite start; host-clean finds skfp*). */
export const TEST_PREFIX = 'skfp-tt'
