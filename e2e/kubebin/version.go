package main

const kubernetesVersion = "v1.34.4"
