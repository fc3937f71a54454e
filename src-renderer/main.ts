// The shared stylesheet first: components' own rules come after it and win.
import './styles/controls.css';
import { mount } from 'svelte';
import App from './App.svelte';

mount(App, { target: document.getElementById('app')! });
