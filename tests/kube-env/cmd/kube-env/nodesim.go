package main

// nodesim: the kubelet's part of the test control plane, without containers. It registers Ready
// fake nodes and writes pod status through the real API, as a kubelet would, so the real
// scheduler, deployment, replicaset, statefulset, daemonset and job controllers see pods become
// Running/Ready, finish, or fail. KWOK does the same with Stages; this small simulator exists
// because the states the aiops playbooks react to (OOMKilled last states, evictions, pods that
// never become ready) are chosen per pod by annotation here, which keeps the tests explicit.
//
// Annotations on a pod (normally set on a workload's pod template) choose what "happens" to it:
//
//	sim.aiops.test/oom-killed: <container>  Running/Ready, that container restarted 3 times, last
//	                                        terminated OOMKilled (exit 137)
//	sim.aiops.test/never-ready: "true"      Running, containers never Ready (progress deadline tests)
//	sim.aiops.test/restarted-never-ready: "true"
//	                                        as never-ready, but only for pods of a restarted template
//	                                        (kubectl.kubernetes.io/restartedAt set): a restart that
//	                                        does not help
//	sim.aiops.test/finished-ago: <duration> with evicted or fail: the pod started and finished
//	                                        that long ago (Go duration, e.g. 2h), for age thresholds
//	sim.aiops.test/evicted: "true"          Failed with reason Evicted, as the kubelet's eviction manager
//	sim.aiops.test/fail: "true"             Failed (exit 1); for a Job's pod, the Job fails
//
// A Job's pod otherwise Succeeds; any other pod becomes Running and Ready. A pod being deleted is
// removed with grace period 0 once it has a deletionTimestamp, which is the kubelet's final step.

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

const annPrefix = "sim.aiops.test/"

type sim struct {
	client kubernetes.Interface
	nodes  map[string]int // node name → index, for pod IPs
	lister func(key string) (interface{}, bool, error)
	queue  workqueue.TypedRateLimitingInterface[string]
}

func runNodesim(args []string) error {
	fs := flag.NewFlagSet("nodesim", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "admin kubeconfig")
	nodes := fs.Int("nodes", 1, "number of fake nodes")
	version := fs.String("kubelet-version", "v0.0.0", "kubelet version to report")
	_ = fs.Parse(args)
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	s := &sim{client: client, nodes: map[string]int{}}
	for i := 0; i < *nodes; i++ {
		name := fmt.Sprintf("kube-env-node-%d", i)
		s.nodes[name] = i
		if err := s.registerNode(ctx, name, *version); err != nil {
			return fmt.Errorf("register node %s: %w", name, err)
		}
	}
	// Heartbeat: keep the Ready condition fresh, as a kubelet does every 10 s by default.
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for name := range s.nodes {
			if err := s.heartbeat(ctx, name, *version); err != nil && ctx.Err() == nil {
				log.Printf("heartbeat %s: %v", name, err)
			}
		}
	}, 10*time.Second)

	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	s.lister = pods.GetIndexer().GetByKey
	s.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj interface{}) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n interface{}) { enqueue(n) },
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced) {
		return fmt.Errorf("pod informer did not sync")
	}
	log.Printf("nodesim: %d node(s) Ready, simulating pods", len(s.nodes))
	for w := 0; w < 4; w++ {
		go s.work(ctx)
	}
	<-ctx.Done()
	s.queue.ShutDown()
	return nil
}

func (s *sim) work(ctx context.Context) {
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		err := s.sync(ctx, key)
		if err != nil && ctx.Err() == nil {
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				log.Printf("pod %s: %v", key, err)
			}
			s.queue.AddRateLimited(key)
		} else {
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

func nodeStatus(version string) corev1.NodeStatus {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("250"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	cond := func(t corev1.NodeConditionType, st corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: st, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
		},
		// Loopback on purpose: nothing that follows these addresses can leave the machine.
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          version,
			OperatingSystem:         "linux",
			Architecture:            "amd64",
			ContainerRuntimeVersion: "nodesim://1",
		},
	}
}

func (s *sim) registerNode(ctx context.Context, name, version string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			"kubernetes.io/hostname": name,
			"kubernetes.io/os":       "linux",
			"kubernetes.io/arch":     "amd64",
			"type":                   "nodesim",
		},
	}}
	if _, err := s.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return s.heartbeat(ctx, name, version)
}

func (s *sim) heartbeat(ctx context.Context, name, version string) error {
	node, err := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	node.Status = nodeStatus(version)
	_, err = s.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

func (s *sim) sync(ctx context.Context, key string) error {
	obj, exists, err := s.lister(key)
	if err != nil || !exists {
		return err
	}
	pod := obj.(*corev1.Pod)
	idx, ours := s.nodes[pod.Spec.NodeName]
	if !ours {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		// The kubelet's last word on a deleted pod: containers are gone, remove the object.
		zero := int64(0)
		uid := pod.UID
		err := s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &uid},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Status.Phase != "" && pod.Status.Phase != corev1.PodPending {
		return nil // already simulated; the pod keeps its fate
	}
	pod = pod.DeepCopy()
	simulate(pod, idx)
	_, err = s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}

func ownedByJob(pod *corev1.Pod) bool {
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" && strings.HasPrefix(o.APIVersion, "batch/") {
			return true
		}
	}
	return false
}

// podSeq numbers pod IPs; workers run concurrently.
var podSeq atomic.Uint32

// simulate fills in the status a kubelet would write for this pod's chosen fate.
func simulate(pod *corev1.Pod, nodeIdx int) {
	now := metav1.Now()
	ann := pod.Annotations
	if ago, err := time.ParseDuration(ann[annPrefix+"finished-ago"]); err == nil {
		now = metav1.NewTime(now.Add(-ago))
	}
	seq := podSeq.Add(1)
	st := &pod.Status
	st.HostIP = "127.0.0.1"
	st.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	ip := fmt.Sprintf("127.%d.%d.%d", 10+nodeIdx, (seq>>8)&0xff, seq&0xff)
	st.PodIP = ip
	st.PodIPs = []corev1.PodIP{{IP: ip}}
	st.StartTime = &now
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now, LastProbeTime: metav1.Time{}}
	}

	running := func(c corev1.Container, ready bool) corev1.ContainerStatus {
		started := true
		return corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "nodesim://" + c.Image, ContainerID: "nodesim://" + string(pod.UID) + "/" + c.Name,
			Ready: ready, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}
	}
	terminated := func(c corev1.Container, code int32, reason string) corev1.ContainerStatus {
		started := false
		return corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "nodesim://" + c.Image, ContainerID: "nodesim://" + string(pod.UID) + "/" + c.Name,
			Started: &started,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: code, Reason: reason, StartedAt: now, FinishedAt: now,
			}},
		}
	}

	var statuses []corev1.ContainerStatus
	switch {
	case ann[annPrefix+"evicted"] == "true":
		st.Phase = corev1.PodFailed
		st.Reason = "Evicted"
		st.Message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi."
		for _, c := range pod.Spec.Containers {
			statuses = append(statuses, terminated(c, 137, "ContainerStatusUnknown"))
		}
		st.Conditions = []corev1.PodCondition{
			cond(corev1.PodScheduled, true, ""),
			cond(corev1.PodReady, false, "PodFailed"),
			cond(corev1.ContainersReady, false, "PodFailed"),
			cond(corev1.DisruptionTarget, true, "TerminationByKubelet"),
		}
	case ann[annPrefix+"fail"] == "true":
		st.Phase = corev1.PodFailed
		for _, c := range pod.Spec.Containers {
			statuses = append(statuses, terminated(c, 1, "Error"))
		}
		st.Conditions = []corev1.PodCondition{
			cond(corev1.PodScheduled, true, ""),
			cond(corev1.PodInitialized, true, ""),
			cond(corev1.PodReady, false, "PodFailed"),
			cond(corev1.ContainersReady, false, "PodFailed"),
		}
	case ownedByJob(pod):
		st.Phase = corev1.PodSucceeded
		for _, c := range pod.Spec.Containers {
			statuses = append(statuses, terminated(c, 0, "Completed"))
		}
		st.Conditions = []corev1.PodCondition{
			cond(corev1.PodScheduled, true, ""),
			cond(corev1.PodInitialized, true, ""),
			cond(corev1.PodReady, false, "PodCompleted"),
			cond(corev1.ContainersReady, false, "PodCompleted"),
		}
	default:
		ready := ann[annPrefix+"never-ready"] != "true"
		if ann[annPrefix+"restarted-never-ready"] == "true" && ann["kubectl.kubernetes.io/restartedAt"] != "" {
			ready = false
		}
		oom := ann[annPrefix+"oom-killed"]
		for _, c := range pod.Spec.Containers {
			cs := running(c, ready)
			if c.Name == oom {
				cs.RestartCount = 3
				cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "OOMKilled", StartedAt: now, FinishedAt: now,
				}}
			}
			statuses = append(statuses, cs)
		}
		st.Phase = corev1.PodRunning
		reason := ""
		if !ready {
			reason = "ContainersNotReady"
		}
		st.Conditions = []corev1.PodCondition{
			cond(corev1.PodScheduled, true, ""),
			cond(corev1.PodReadyToStartContainers, true, ""),
			cond(corev1.PodInitialized, true, ""),
			cond(corev1.PodReady, ready, reason),
			cond(corev1.ContainersReady, ready, reason),
		}
	}
	st.ContainerStatuses = statuses
	if st.QOSClass == "" {
		st.QOSClass = corev1.PodQOSBestEffort
	}
}
